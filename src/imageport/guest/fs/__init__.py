"""Read-only filesystem readers (ext2/3/4, XFS, Btrfs, FAT) and signature detection."""
