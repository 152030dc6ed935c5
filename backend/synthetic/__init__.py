"""Synthetic subjects with a ground truth (procedural shapes and the bundled example): the demo's input and
the tests'; not stages."""
