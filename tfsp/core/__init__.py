"""The light core every other package builds on (no TensorFlow import): errors, the image
data's feature keys, the SavedModels' signature names, the family contract, the pipeline /
trainer contract, argparse types, Beam defaults and framework log settings."""
