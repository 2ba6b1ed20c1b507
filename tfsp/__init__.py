"""tfsp: TFX pipelines per model family, versioned SavedModels, TF Serving."""
