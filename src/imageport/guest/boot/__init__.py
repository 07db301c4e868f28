"""How the guest boots: boot modes, boot loader configuration, kernels and their initrds."""
