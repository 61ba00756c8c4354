"""Cases to training arrays: sector mask from the image, resampling, intensities, class layout, splits."""
