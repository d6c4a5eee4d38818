"""The plasticity lab: the synthetic nonstationary problems of Lyle et al. (2024) on the agents' own
network, value losses, optimiser, interventions and probes (`python -m lab`, README)."""
