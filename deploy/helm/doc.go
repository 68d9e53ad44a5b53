// Package helm holds the tests of Weir's Helm chart (deploy/helm/weir):
// `helm lint --strict`, and `helm template` against the default values,
// a few good variations and bad values files that must fail with a clear
// sentence. They run the helm binary `make` installs in .tools/helm.
package helm
