"""Clustering method registry. Every method is an estimator `Method(n_clusters, seed, **params)` with
`fit_predict(embeddings, **inputs) -> int assignments`. Registry info: `needs_knn` (inputs gain
`neighbours`, the kNN graph), `lightning` (inputs gain `logger`, an MLFlowLogger or None) and `spaces`
(the method reads several embedding artifacts of the same images: inputs gain `spaces`, the others'), `small`
(a CPU job of seconds, run with others in one allocation on a cluster) and `head` (a clustering head trained on the
frozen features: the claims ledger's findings compare each with k-means). Its settings: SETTINGS in its own module
(lightning_modules.core.registry)."""

from lightning_modules.core.registry import Registry

METHODS = Registry("clustering method")
METHODS.register("kmeans", "lightning_modules.clustering.kmeans:LloydKMeans", needs_knn=False, lightning=False,
                 small=True)
_HEADS = "lightning_modules.clustering.heads.estimator"
METHODS.register("temi", f"{_HEADS}:TEMIClustering", needs_knn=True, lightning=True, head=True)
METHODS.register("scan", f"{_HEADS}:SCANClustering", needs_knn=True, lightning=True, head=True)
METHODS.register("sinkhorn", f"{_HEADS}:SinkhornClustering", needs_knn=True, lightning=True, head=True)
METHODS.register("dec", f"{_HEADS}:DECClustering", needs_knn=False, lightning=True, head=True)
METHODS.register("turtle", "lightning_modules.clustering.turtle:TURTLE", needs_knn=False, lightning=False, spaces=True)


# Label-free criteria that pick a configuration (method, K) of a dataset x backbone: one small class each
# (lightning_modules/clustering/criteria.py has the contract); `clustering.selection_criterion` names the default
SELECTION_CRITERIA = Registry("selection criterion")
_CRITERIA = "lightning_modules.clustering.criteria"
SELECTION_CRITERIA.register("knn_agreement", f"{_CRITERIA}:KnnAgreement")
SELECTION_CRITERIA.register("knn_agreement_corrected", f"{_CRITERIA}:KnnAgreementCorrected")
SELECTION_CRITERIA.register("balance", f"{_CRITERIA}:Balance")
SELECTION_CRITERIA.register("generalisation", f"{_CRITERIA}:Generalisation")
SELECTION_CRITERIA.register("silhouette", f"{_CRITERIA}:Silhouette")
SELECTION_CRITERIA.register("umap_silhouette", f"{_CRITERIA}:UmapSilhouette")
SELECTION_CRITERIA.register("stability", f"{_CRITERIA}:Stability")
SELECTION_CRITERIA.register("prediction_strength", f"{_CRITERIA}:PredictionStrength")
SELECTION_CRITERIA.register("gap", f"{_CRITERIA}:GapStatistic")
SELECTION_CRITERIA.register("kept_clusters_knee", f"{_CRITERIA}:KeptClustersKnee")
SELECTION_CRITERIA.register("consensus", f"{_CRITERIA}:Consensus")
SELECTION_CRITERIA.register("agreement_generalisation", f"{_CRITERIA}:AgreementGeneralisation")
SELECTION_CRITERIA.register("largest_of_picks", f"{_CRITERIA}:LargestOfPicks")

GRID_KEYS = ("k", "seeds", "datasets", "spaces")  # a method's own grid in config; not estimator parameters


def estimator_params(method_config: dict) -> dict:
    return {key: value for key, value in method_config.items() if key not in GRID_KEYS}


__all__ = ["METHODS", "GRID_KEYS", "SELECTION_CRITERIA", "estimator_params"]
