"""The AutoEncoder family: compress and reconstruct, measured against PCA; the encoder alone
is served for features (family.py: options and entry; model.py: the models, PCA, the
Transform function and the Trainer)."""
