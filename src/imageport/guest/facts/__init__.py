"""Facts about the guest: its OS, accounts, network, cloud-init, services, and the inspection."""
