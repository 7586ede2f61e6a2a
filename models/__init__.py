"""PyTorch modules of Bitseek: the deep binary autoencoder, shallow feature learners, the hasher,
the denoising autoencoder."""
