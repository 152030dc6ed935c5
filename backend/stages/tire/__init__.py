"""TIRE's own stages (seed 000): progressive inpainting ring by ring from the references (Inpaint), the
classical OpenCV inpainter that stands in without diffusion weights, and the consistency rounds + Gaussian
fit (Resplat). Tracking is `views.track`; the personalised inpainter is `diffusion.sample.subject`."""
