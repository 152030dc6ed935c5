"""4D: an animated mesh's poses, tracking by surface identity across frames, splats bound to the surface."""
