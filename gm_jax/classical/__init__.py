"""Classical generative models as pure JAX functions: Hopfield networks, Boltzmann machines, restricted
Boltzmann machines, mixture models fitted by EM, PCA and probabilistic PCA."""
