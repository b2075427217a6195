module github.com/demobank/yacredits/services/scoring

go 1.26
