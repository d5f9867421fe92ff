package mailparse
import ("testing";"os";"path/filepath";"time";"strconv";"strings";"fmt")
func TestZZCorpus(t *testing.T){
 dir := os.Getenv("CORPUS")
 files, _ := filepath.Glob(filepath.Join(dir, "*"))
 for _, f := range files {
  b, _ := os.ReadFile(f)
  lines := strings.SplitN(string(b), "\n", 3)
  s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
  if err != nil { t.Fatal(err) }
  raw := []byte(s)
  st := time.Now(); m := Parse(raw); d1 := time.Since(st)
  st = time.Now(); if topHeaderOK(raw) { checkSections(t, raw, m.BodyStructure) }; d2 := time.Since(st)
  fmt.Printf("%s len=%d parse=%v sections=%v\n", filepath.Base(f), len(raw), d1, d2)
 }
}
