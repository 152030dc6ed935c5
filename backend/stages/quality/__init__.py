"""Image quality: the one PSNR and the one SSIM (shared by evaluation and the fit loss) and the held-out
evaluation of a refined mesh against true views, split into observed and infilled regions."""
