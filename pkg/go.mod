module github.com/demobank/yacredits/pkg

go 1.26
