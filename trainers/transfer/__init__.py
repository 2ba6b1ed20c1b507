"""The transfer-learning family: the pushed CNN's convolutional base, a new head, a new task
(family.py: options and entry; model.py: the two models and the Trainer)."""
