"""Jobs: the import, export and copy jobs, their rows and limits, and recovery after a crash."""
