"""3D Gaussians: the set, its renderers (gsplat on CUDA, a pure-torch reference everywhere), densification
and the fit loop (TIRE's resplat; 3DGS optimisation). The CUDA fast paths of the fit live in `fast/`."""
