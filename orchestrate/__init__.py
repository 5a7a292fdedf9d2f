"""vrlab orchestrator: topology files to running QEMU/libvirt labs."""
