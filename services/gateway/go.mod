module github.com/demobank/yacredits/services/gateway

go 1.26
