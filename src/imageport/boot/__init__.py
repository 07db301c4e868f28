"""What a boot of an image showed: the console text of a virtual machine read as boot stages.

Pure code, no I/O: :mod:`imageport.boot.console` turns raw console bytes into clean lines,
:mod:`imageport.boot.verdict` reads those lines as the stages a boot reached and the lines that
prove each one. QEMU itself is run by :mod:`imageport.adapters.qemu`; the use case that ties
them together is :mod:`imageport.service.tools.boot_test`.
"""
