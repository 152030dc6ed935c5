"""Baking: views of the asset onto the artist's own UV texture (visibility by depth test, weights by view
cosine, seams dilated)."""
