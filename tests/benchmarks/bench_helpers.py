"""What the benchmark tests share: the keys every accuracy report has."""

REPORT_KEYS = {"image_auroc", "image_auroc_ci95", "pixel_auroc", "aupro", "f1", "false_alarm_rate",
               "miss_rate", "per_type_auroc", "images", "threshold"}
