"""The RNN family: a recurrent classifier reading each digit image row by row (family.py:
options and entry; model.py: the cells, the model and the Trainer; experiments.py: the
notes' long-range, exploding-gradient and truncated-BPTT claims)."""
