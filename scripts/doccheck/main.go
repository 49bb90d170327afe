// Command doccheck lists exported identifiers (functions, types, struct fields,
// constants, variables) that have no doc comment in the given package
// directories, and exits 1 if there are any. make verify runs it.
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
)

func main() {
	bad := 0
	for _, dir := range os.Args[1:] {
		fset := token.NewFileSet()
		pkgs, err := parser.ParseDir(fset, dir, func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, parser.ParseComments)
		if err != nil {
			panic(err)
		}
		for _, p := range pkgs {
			for fn, f := range p.Files {
				for _, d := range f.Decls {
					switch d := d.(type) {
					case *ast.FuncDecl:
						if d.Name.IsExported() && d.Doc == nil {
							fmt.Println(fn, d.Name.Name)
							bad++
						}
					case *ast.GenDecl:
						for _, s := range d.Specs {
							switch s := s.(type) {
							case *ast.TypeSpec:
								if s.Name.IsExported() && d.Doc == nil && s.Doc == nil {
									fmt.Println(fn, s.Name.Name)
									bad++
								}
								if st, ok := s.Type.(*ast.StructType); ok {
									for _, f := range st.Fields.List {
										for _, n := range f.Names {
											if n.IsExported() && f.Doc == nil && f.Comment == nil {
												fmt.Println(fn, s.Name.Name+"."+n.Name)
												bad++
											}
										}
									}
								}
							case *ast.ValueSpec:
								for _, n := range s.Names {
									if n.IsExported() && d.Doc == nil && s.Doc == nil && s.Comment == nil {
										fmt.Println(fn, n.Name)
										bad++
									}
								}
							}
						}
					}
				}
			}
		}
	}
	if bad > 0 {
		os.Exit(1)
	}
}
