"""Partition replication: leaders, followers, high watermark, ISR, leader epochs."""
