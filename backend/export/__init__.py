"""Writers of result files: GLB, 3DGS PLY, PC2, contact sheets."""
