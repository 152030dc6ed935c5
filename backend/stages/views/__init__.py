"""What the asset looks like from a camera: cameras, meshes, exact mesh passes (ray casting), backward
tracking (TIRE step 2: which reference observes a target pixel) and reference alignment overlays."""
