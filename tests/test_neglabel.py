"""NegLabel (`neglabel`) against the official code (XueJiang16/NegLabel), transcribed below from
mmcls/models/classifiers/multi_modal.py (the mining) and mmcls/models/ood/clip_ood.py (the grouping and score), on a
random open_clip model and a WordNet database written by hand; the corpus reader on Debian's WordNet."""

import numpy as np
import pytest
import torch

from lightning_modules.ood import build_scorer
from lightning_modules.ood.neglabel import (ADJECTIVE_PROMPT, CLASS_PROMPT, NOUN_PROMPT, neglabel_score,
                                            wordnet_corpus)

NOUNS = ["entity", "physical_entity", "hammer", "violin", "glacier", "poetry", "tax", "tuesday", "sorrow", "ocean",
         "mountain", "fork", "bicycle_pump", "lawyer", "gravity", "onion_dome", "harbour", "anvil", "satire", "fog",
         "drum", "quarry", "ledger", "spire", "kiln"]
ADJECTIVES = ["able", "unable", "purple", "hollow", "brisk", "solemn", "galore", "tidy", "vast", "damp"]


def write_database(directory, animals=("dog", "lion")):
    """data.noun and data.adj in wndb(5WN)'s format: a licence header of lines starting with two spaces, then
    `offset lex_filenum ss_type w_cnt word lex_id ... | gloss`. Animals (lex file 05) are left out by default; one
    noun synset has a second word (only the first counts), one adjective repeats a noun (kept once, as a noun)."""
    header = "  1 This software and database is being provided to you, the LICENSEE, by\n  2 Princeton University\n"
    nouns = [f"{i:08d} 06 n 01 {word} 0 000 | a gloss" for i, word in enumerate(NOUNS)]
    nouns[3] = "00000003 06 n 02 violin 0 fiddle 0 000 | a bowed instrument"
    nouns += [f"{90 + i:08d} 05 n 01 {word} 0 000 | an animal" for i, word in enumerate(animals)]
    adjectives = [f"{i:08d} 00 {'a' if i % 2 else 's'} 01 {word}{'(ip)' if word == 'galore' else ''} 0 000 | gloss"
                  for i, word in enumerate(ADJECTIVES)] + ["00000099 00 a 01 fog 0 000 | repeats a noun"]
    (directory / "data.noun").write_text(header + "\n".join(nouns) + "\n")
    (directory / "data.adj").write_text(header + "\n".join(adjectives) + "\n")
    return directory


def test_the_corpus_is_each_synsets_first_name_once_without_the_excluded_files(tmp_path):
    nouns, adjectives = wordnet_corpus(write_database(tmp_path))
    assert nouns == [word.replace("_", " ") for word in NOUNS]  # no fiddle, no animals
    assert adjectives == ADJECTIVES  # galore without its marker; fog already a noun
    assert wordnet_corpus(tmp_path, exclude=())[0][-2:] == ["dog", "lion"]


def test_a_missing_database_is_one_line_naming_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"WordNet's database is not at .* \(no data.noun, data.adj\): "
                                                r"apt-get install wordnet-base"):
        wordnet_corpus(tmp_path)


def official_mining(model, class_names, nouns, adjectives, percentile, share):
    """multi_modal.py CLIPScalableClassifier.__init__, its tensors on the CPU."""
    def encode(prompts):
        features = model.clip.encode_text(model.tokenizer(prompts)).to(torch.float32)
        return features / features.norm(dim=-1, keepdim=True)

    with torch.no_grad():
        pos = encode([NOUN_PROMPT.format(c) for c in class_names])
        neg = torch.cat([encode([NOUN_PROMPT.format(w) for w in nouns]),
                         encode([ADJECTIVE_PROMPT.format(w) for w in adjectives])])
        neg_sim = torch.quantile(neg @ pos.T, q=percentile, dim=-1)
        ind_noun, ind_adj = torch.argsort(neg_sim[:len(nouns)]), torch.argsort(neg_sim[len(nouns):])
        kept = torch.cat([neg[:len(nouns)][ind_noun[:int(len(ind_noun) * share)]],
                          neg[len(nouns):][ind_adj[:int(len(ind_adj) * share)]]])
    return pos, kept


def official_score(image_features, pos_text, neg_text, ngroup, t=1):
    """clip_ood.py ScalableClassifier.forward -> grouping(random_permute=True), the permutation on the CPU."""
    pos, neg = 100.0 * image_features @ pos_text.T, 100.0 * image_features @ neg_text.T
    drop = neg.shape[1] % ngroup
    if drop > 0:
        neg = neg[:, :-drop]
    torch.manual_seed(0)
    idx = torch.randperm(neg.shape[1])
    negs = neg.T[idx].T.reshape(pos.shape[0], ngroup, -1)
    scores = [torch.cat([pos, negs[:, i, :]], dim=-1).div(t).softmax(dim=-1)[:, :pos.shape[1]].sum(dim=-1)
              for i in range(ngroup)]
    return torch.stack(scores, dim=-1).mean(dim=-1)


@pytest.fixture(scope="module")
def tiny_clip():
    from lightning_modules.backbones import build_backbone

    torch.manual_seed(0)
    return build_backbone("openclip/ViT-B-32", pretrained=False)[0]


def test_mining_and_score_match_the_official_code(tiny_clip, tmp_path):
    """Half of 25 nouns (12) and of 10 adjectives (5) kept: 17 negatives in 3 groups, so 2 are dropped first."""
    classes = ["cat", "dog", "ship"]
    scorer = build_scorer("neglabel", wordnet=str(write_database(tmp_path)), negative_share=0.5, groups=3)
    x = np.random.default_rng(0).normal(size=(6, tiny_clip.clip.text_projection.shape[1])).astype(np.float32)
    scores = scorer.fit(x, backbone=tiny_clip, class_names=classes).score(x)
    pos, kept = official_mining(tiny_clip, classes, [w.replace("_", " ") for w in NOUNS], ADJECTIVES, 0.95, 0.5)
    assert len(kept) == 17 and CLASS_PROMPT == NOUN_PROMPT == "the nice {}"
    np.testing.assert_allclose(scorer.negatives_, kept.numpy(), atol=1e-6)
    unit = torch.nn.functional.normalize(torch.from_numpy(x), dim=-1)
    np.testing.assert_allclose(scores, official_score(unit, pos, kept, ngroup=3).numpy(), atol=1e-5)
    assert len(scorer.negative_words_) == 17 and "cat" not in scorer.negative_words_


def test_one_group_against_one_negative_in_closed_form():
    """One class at cosine a, one negative at cosine b, temperature T: e^(a/T) / (e^(a/T) + e^(b/T))."""
    image, positive, negative = np.array([[1.0, 0.0]]), np.array([[0.6, 0.8]]), np.array([[0.8, -0.6]])
    expected = np.exp(0.6 / 0.01) / (np.exp(0.6 / 0.01) + np.exp(0.8 / 0.01))
    assert neglabel_score(image, positive, negative, groups=1, temperature=0.01)[0] == pytest.approx(expected)
    # two groups of one negative each: the mean of the two one-negative scores, whichever order they are drawn in
    negatives = np.array([[0.8, -0.6], [0.0, 1.0]])
    second = np.exp(0.6 / 0.01) / (np.exp(0.6 / 0.01) + np.exp(0.0))
    assert neglabel_score(image, positive, negatives, 2, 0.01)[0] == pytest.approx((expected + second) / 2)


def test_neglabel_needs_a_text_tower_and_class_names(tiny_clip):
    from lightning_modules.backbones import build_backbone

    pixels = build_backbone("pixels")[0]
    with pytest.raises(ValueError, match="'neglabel' needs a backbone with a text tower .*'pixels' has none"):
        build_scorer("neglabel").fit(np.ones((2, 3)), backbone=pixels, backbone_spec="pixels", class_names=["a"])
    with pytest.raises(ValueError, match="'neglabel' needs the ID class names"):
        build_scorer("neglabel").fit(np.ones((2, 3)), backbone=tiny_clip, class_names=None)


def test_debians_wordnet_gives_the_official_corpus_size():
    """WordNet 3.0 from Debian's wordnet-base (installed here where missing, as the Makefile's `wordnet` target
    does): about 58,500 nouns and 12,300 adjectives, 15% of each kept: ~10,600 negatives (the official config's
    comment: "15% -> 10000")."""
    from pathlib import Path

    from debian import apt_install, unavailable

    if not Path("/usr/share/wordnet/data.noun").is_file():
        reason = apt_install(["wordnet-base"], "WordNet (wordnet-base)")
        if reason:
            unavailable(reason)
    nouns, adjectives = wordnet_corpus("/usr/share/wordnet")
    assert nouns[:2] == ["entity", "physical entity"] and 55_000 < len(nouns) < 62_000
    assert 11_000 < len(adjectives) < 13_500 and len(set(nouns) | set(adjectives)) == len(nouns) + len(adjectives)
    assert 10_000 < int(len(nouns) * 0.15) + int(len(adjectives) * 0.15) < 11_000
