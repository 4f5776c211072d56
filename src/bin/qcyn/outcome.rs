//! How a command that did its work ends: exit code 3 when it left images out, and their listing.
use std::process::ExitCode;

use qcyn::dataset::Skipped;

/// Exit code when the work is done but some images were left out.
const EXIT_SKIPPED: u8 = 3;

/// 0 when no image was left out, else 3.
pub fn exit_code(left_out: usize) -> ExitCode {
    if left_out == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_SKIPPED)
    }
}

/// The images a command left out, by reason, borrowed from its report.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeftOut<'a> {
    /// Files that could not be used, and why.
    pub skipped: &'a [Skipped],
    /// Face models: images in which no face was found, and what was done with them.
    pub no_face: &'a [Skipped],
    /// Face models: images with several faces of similar size.
    pub ambiguous: &'a [Skipped],
    /// Face models: training images in which no face looks like the class's person.
    pub unmatched: &'a [Skipped],
}

impl LeftOut<'_> {
    /// How many images were left out.
    pub fn count(&self) -> usize {
        self.skipped.len() + self.no_face.len() + self.ambiguous.len() + self.unmatched.len()
    }

    /// 0 when every image was used, else 3.
    pub fn exit_code(&self) -> ExitCode {
        exit_code(self.count())
    }

    /// Prints one line per image left out: `skipped PATH: REASON`, then `no face: PATH`, then
    /// `ambiguous: PATH: REASON`.
    pub fn print(&self) {
        for s in self.skipped {
            println!("skipped {}: {}", s.path.display(), s.reason);
        }
        for p in self.no_face {
            println!("no face: {}: {}", p.path.display(), p.reason);
        }
        for a in self.ambiguous {
            println!("ambiguous: {}: {}", a.path.display(), a.reason);
        }
        for a in self.unmatched {
            println!("not the class's person: {}: {}", a.path.display(), a.reason);
        }
    }
}
