"""The CNN family: LeNet-5 as the study notes lay it out (family.py: options and entry;
model.py: the TensorFlow model and the Trainer)."""
