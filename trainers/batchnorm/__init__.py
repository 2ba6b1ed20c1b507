"""The batch-normalization family: one deep MLP trained with and without BN between each
Dense layer and its activation (family.py: options and entry; model.py: the MLP, the
distributions figure and the Trainer)."""
