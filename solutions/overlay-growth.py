my_prediction_kib = growth_writes * disk.info(overlay).cluster_size // 1024  # one fresh cluster per write
