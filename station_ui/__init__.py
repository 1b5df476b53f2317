"""The line-side review station: Flask app, MQTT ingest, SQLite store, review screen, dashboard, export API."""
