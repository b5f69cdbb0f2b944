"""The simulated social platform every case study draws from (DESIGN.md §4).

One seeded population of users is shared by all cases; each case adds its items and interaction logs,
drawn from known latent models so the oracle metric (the metric of the true probabilities) is exact.
"""
