// Package deploy checks recon's Kubernetes manifests (deploy/k8s): its test
// renders every kustomization with the kustomize API and decodes every
// object strictly into the Kubernetes API types. It is a module of its own
// so that the Kubernetes libraries stay out of recon's.
package deploy
