"""Reading the guest inside a virtual disk: partitions, volumes, filesystems, facts.

Everything here is read-only and pure Python, works on any :class:`BlockDevice` (a virtual disk,
a partition, a logical volume), and caps every number it reads before using it.
"""
