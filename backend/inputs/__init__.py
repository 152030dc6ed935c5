"""Readers (and the matching writers) of the files a user hands the CLI: camera sets, images, meshes."""
