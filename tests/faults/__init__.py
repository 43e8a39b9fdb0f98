"""Fault scenarios: crashes, power cuts, corruption, full disks, clock jumps, partitions,
hostile input. Short versions run in `make test`; the long ones (marked faults_long) in
`make faults`."""
