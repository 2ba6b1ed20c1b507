"""Raw image sources and their conversion into split TFRecord files of tf.Examples."""
