"""simtopup: a self-hostable recharge platform for prepaid eSIM data cards and hotspot devices."""
