//! Indented text output for the emitters: four spaces per level, no trailing spaces, so
//! the generated files read cleanly even though rustfmt does not touch them.

#[derive(Default)]
pub struct CodeWriter {
    text: String,
    indent: usize,
}

impl CodeWriter {
    pub fn line(&mut self, line: impl AsRef<str>) {
        let line = line.as_ref();
        if !line.is_empty() {
            for _ in 0..self.indent {
                self.text.push_str("    ");
            }
            self.text.push_str(line);
        }
        self.text.push('\n');
    }

    pub fn blank(&mut self) {
        self.text.push('\n');
    }

    /// Writes `line` and indents what follows (for lines ending in `{`).
    pub fn open(&mut self, line: impl AsRef<str>) {
        self.line(line);
        self.indent += 1;
    }

    /// Dedents and writes `line` (for lines starting with `}`).
    pub fn close(&mut self, line: impl AsRef<str>) {
        self.indent = self.indent.saturating_sub(1);
        self.line(line);
    }

    /// Writes each line of an already formatted block at the current indentation.
    pub fn block(&mut self, block: &str) {
        for line in block.lines() {
            self.line(line);
        }
    }

    /// Writes `block` one level deeper than the current indentation.
    pub fn indented(&mut self, block: &str) {
        self.indent += 1;
        self.block(block);
        self.indent -= 1;
    }

    pub fn finish(self) -> String {
        self.text
    }
}
