"""Data for training and evaluation: read (`load`), clean, augment, split, tokenise (`batching`), and prepare a
training run's splits (`prepare`). Options live in `bertc.data.config`."""
