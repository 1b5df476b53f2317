"""station_ui"""
