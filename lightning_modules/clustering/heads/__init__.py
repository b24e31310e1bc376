"""Clustering heads trained on frozen embeddings (and their kNN graph): one LightningModule each."""
