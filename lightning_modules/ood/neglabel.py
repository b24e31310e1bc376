"""`neglabel`: NegLabel (Jiang et al., ICLR 2024): thousands of negative labels mined from WordNet, far from the ID
classes; an image scores by the share of its softmax over (ID classes + negatives) that falls on the ID classes,
averaged over groups of the negatives. Needs a backbone with a text tower (openclip/) and WordNet's database.

Follows XueJiang16/NegLabel:
- the corpus: `txtfiles/` (noun.<lexicographer file>.txt, adj.<...>.txt: the first name of each WordNet synset,
  lower case, every noun file but noun.animal and noun.food), read here from WordNet's own database (Debian's
  `wordnet-base`: data.noun, data.adj; the format is wndb(5WN)), each name once, the first kept (the official reads
  its files in os.listdir order; here nouns come first). Measured against the official files: 99.5% or more of
  each noun file's names are found here (the rest differ in punctuation or WordNet version), 99.3% of adj.all's;
  WordNet 3.0 gives 10,994 adj.all names where the official file has 10,007;
- the prompts and the mining: mmcls/models/classifiers/multi_modal.py (CLIPScalableClassifier): classes and nouns
  in `prompt_templates[85]` ("the nice {}"), adjectives in "This is a {} photo"; each negative's distance to the ID
  classes is the `percentile` quantile of its cosines to them; of nouns and of adjectives separately, the
  `negative_share` with the lowest are kept (nouns first);
- the score: mmcls/models/ood/clip_ood.py (ScalableClassifier.grouping): logits 100 x cosine (t = 1, the config's
  "temperature 0.01"); the negatives beyond a multiple of `groups` dropped from the end, the rest permuted with
  torch's generator seeded 0 and cut into `groups` equal groups; per group the softmax mass on the classes; the
  mean over groups;
- the settings: custom_config/clip.py (ngroup 100, neg_topk 0.15, pencentile 0.95, t = 1).
Deliberate difference: the official draws its permutation on the GPU (torch.randperm on cuda); this one draws it
on the CPU generator, so the groups differ (the same distribution of groups; a parity test fixes the permutation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.special import logsumexp

from lightning_modules.core.checks import schema_defaults
from lightning_modules.ood.base import OODScorer
from lightning_modules.ood.zeroshot import joint_space, require_text_tower
from lightning_modules.search.rows import l2_normalise

CLASS_PROMPT = NOUN_PROMPT = "the nice {}"  # the official prompt_templates[85] (prompt_idx_pos = prompt_idx_neg)
ADJECTIVE_PROMPT = "This is a {} photo"
_SETTINGS = schema_defaults("ood", "neglabel")  # config/schema.yaml: the official values, said once
TEXT_BATCH = 1000  # the official emb_batchsize
# lexnames(5WN): the lexicographer file of each lex_filenum in data.noun / data.adj (wordnet-base ships no lexnames)
LEXICOGRAPHER_FILES = {0: "adj.all", 1: "adj.pert", 44: "adj.ppl", 3: "noun.Tops", 4: "noun.act", 5: "noun.animal",
                       6: "noun.artifact", 7: "noun.attribute", 8: "noun.body", 9: "noun.cognition",
                       10: "noun.communication", 11: "noun.event", 12: "noun.feeling", 13: "noun.food",
                       14: "noun.group", 15: "noun.location", 16: "noun.motive", 17: "noun.object", 18: "noun.person",
                       19: "noun.phenomenon", 20: "noun.plant", 21: "noun.possession", 22: "noun.process",
                       23: "noun.quantity", 24: "noun.relation", 25: "noun.shape", 26: "noun.state",
                       27: "noun.substance", 28: "noun.time"}
SCORE_ROWS = 4096  # images scored at once: (rows x negatives) logits in memory


def wordnet_corpus(database: str | Path, exclude=tuple(_SETTINGS["exclude"])) -> tuple[list[str], list[str]]:
    """(nouns, adjectives): the first word of every noun and adjective synset in WordNet's `data.noun` and
    `data.adj` outside the `exclude`d lexicographer files, lower case, underscores as spaces, an adjective's
    syntactic marker ("(a)", "(p)", "(ip)") dropped; each name once. Written here, not with nltk's reader (not a
    dependency): one split per line of a documented format."""
    database = Path(database)
    missing = [name for name in ("data.noun", "data.adj") if not (database / name).is_file()]
    if missing:
        raise FileNotFoundError(f"WordNet's database is not at {database} (no {', '.join(missing)}): "
                                f"apt-get install wordnet-base (`make wordnet`), or set ood.neglabel.wordnet")
    seen: set[str] = set()
    kinds = []
    for name in ("data.noun", "data.adj"):
        words = []
        for line in (database / name).read_text(encoding="utf-8", errors="replace").splitlines():
            if not line or line.startswith(" "):  # the licence header's lines start with two spaces
                continue
            # synset_offset lex_filenum ss_type w_cnt word lex_id ...: the synset's first word is field 4
            fields = line.split(" ", 5)
            if LEXICOGRAPHER_FILES.get(int(fields[1])) in exclude:
                continue
            word = fields[4].split("(")[0].replace("_", " ").lower()
            if word not in seen:
                seen.add(word)
                words.append(word)
        kinds.append(words)
    return kinds[0], kinds[1]


def text_embeddings(backbone, prompts: list[str]) -> np.ndarray:
    """(P, D) unit text embeddings of `prompts`, TEXT_BATCH at a time."""
    parts = []
    with torch.inference_mode():
        for start in range(0, len(prompts), TEXT_BATCH):
            tokens = backbone.tokenizer(prompts[start:start + TEXT_BATCH])
            parts.append(torch.nn.functional.normalize(backbone.clip.encode_text(tokens).float(), dim=-1))
    return torch.cat(parts).double().numpy()


def mine_negatives(classes: np.ndarray, nouns: np.ndarray, adjectives: np.ndarray, percentile: float,
                   share: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The negatives farthest from the ID classes: per kind, each candidate's `percentile` quantile of its cosines to
    the classes (linear interpolation, as torch.quantile), the int(share x count) lowest kept. Returns the kept
    embeddings (nouns first) and the kept nouns' and adjectives' indices, nearest-to-farthest order reversed: the
    farthest first, as the official argsort gives them."""
    kept = []
    for candidates in (nouns, adjectives):
        distance = np.quantile(candidates @ classes.T, percentile, axis=1)
        kept.append(np.argsort(distance, kind="stable")[:int(len(candidates) * share)])
    return np.concatenate([nouns[kept[0]], adjectives[kept[1]]]), kept[0], kept[1]


def group_permutation(count: int, seed: int = 0) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(count, generator=generator).numpy()


def neglabel_score(images: np.ndarray, classes: np.ndarray, negatives: np.ndarray, groups: int, temperature: float,
                   permutation: np.ndarray | None = None) -> np.ndarray:
    """(N,) the mean over `groups` groups of negatives of the softmax mass on the classes, logits cosine / temperature
    (every row unit length). With one group: the mass against every negative, nothing dropped or permuted."""
    positive = images @ classes.T / temperature
    negative = images @ negatives.T / temperature
    if groups <= 1:
        return np.exp(logsumexp(positive, axis=1) - logsumexp(np.hstack([positive, negative]), axis=1))
    usable = negative.shape[1] - negative.shape[1] % groups
    order = group_permutation(usable) if permutation is None else permutation
    grouped = negative[:, :usable][:, order].reshape(len(images), groups, -1)
    on_classes = logsumexp(positive, axis=1)[:, None]
    totals = np.logaddexp(on_classes, logsumexp(grouped, axis=2))
    return np.exp(on_classes - totals).mean(axis=1)


class NegLabel(OODScorer):
    def __init__(self, wordnet: str = _SETTINGS["wordnet"], exclude=tuple(_SETTINGS["exclude"]),
                 percentile: float = _SETTINGS["percentile"], negative_share: float = _SETTINGS["negative_share"],
                 groups: int = _SETTINGS["groups"], temperature: float = _SETTINGS["temperature"]):
        self.wordnet = wordnet
        self.exclude = tuple(exclude)
        self.percentile = percentile
        self.negative_share = negative_share
        self.groups = groups
        self.temperature = temperature

    def fit(self, embeddings: np.ndarray, labels: np.ndarray | None = None, backbone=None, backbone_spec: str = "",
            class_names: list[str] | None = None, **context) -> "NegLabel":
        """Only the class names and WordNet are used: no ID images, no labels."""
        require_text_tower(backbone, backbone_spec, "neglabel")
        if not class_names:
            raise ValueError("OOD scorer 'neglabel' needs the ID class names")
        nouns, adjectives = wordnet_corpus(self.wordnet, self.exclude)
        self.classes_ = text_embeddings(backbone, [CLASS_PROMPT.format(name) for name in class_names])
        self.negatives_, noun_index, adjective_index = mine_negatives(
            self.classes_, text_embeddings(backbone, [NOUN_PROMPT.format(word) for word in nouns]),
            text_embeddings(backbone, [ADJECTIVE_PROMPT.format(word) for word in adjectives]),
            self.percentile, self.negative_share)
        self.negative_words_ = [nouns[i] for i in noun_index] + [adjectives[i] for i in adjective_index]
        self.backbone_ = backbone
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        x = l2_normalise(joint_space(getattr(self, "backbone_", None), x)).astype(np.float64)
        count = len(self.negatives_)
        permutation = group_permutation(count - count % self.groups) if self.groups > 1 else None
        return np.concatenate([neglabel_score(x[start:start + SCORE_ROWS], self.classes_, self.negatives_, self.groups,
                                              self.temperature, permutation)
                               for start in range(0, len(x), SCORE_ROWS)])
