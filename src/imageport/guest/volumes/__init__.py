"""Block devices and volumes: partition tables, LVM, and finding every volume on a disk."""
