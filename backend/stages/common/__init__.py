"""What several stage packages share: image conversion and resizing helpers and the asynchronous loss log of
the optimisation loops."""
