// Package grafana holds Weir's Grafana dashboard, weir.json: import it in
// Grafana (Dashboards → New → Import) and pick the Prometheus data source
// that scrapes the processes' --metrics-listen. The package's test keeps the
// dashboard well formed and every metric and label it queries documented in
// docs/metrics.md, so a renamed metric cannot leave a panel silently empty.
package grafana
