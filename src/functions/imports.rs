//! Module resolution in a sandbox: there is none, a function is one file.
//!
//! Without a resolver of its own, QuickJS resolves an import against the modules already
//! loaded in the runtime, by name: `import('plinth:prelude')` handed out the prelude (the
//! `ctx` factory), and `import('./other.js')` another function of the bundle that had run
//! on the worker. So every specifier is refused at resolution, before that lookup: a
//! static `import` fails the deploy's validation, an `import()` rejects with a `TypeError`
//! the function can catch.

use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::module::Declared;
use rquickjs::{Ctx, Exception, Module, Runtime};

/// Specifiers are the function author's text; the error repeats only this much of one.
const MAX_SPECIFIER_CHARS: usize = 100;

struct NoImports;

fn refuse(ctx: &Ctx<'_>, name: &str) -> rquickjs::Error {
    let name: String = name.chars().take(MAX_SPECIFIER_CHARS).collect();
    Exception::throw_type(
        ctx,
        &format!("imports are not supported (a function is one file): '{name}'"),
    )
}

impl Resolver for NoImports {
    fn resolve<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        _base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        Err(refuse(ctx, name))
    }
}

impl Loader for NoImports {
    // Not reached while resolution fails; a loader that loads nothing keeps it so.
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, Declared>> {
        Err(refuse(ctx, name))
    }
}

/// Makes every import in `runtime` fail.
pub fn refuse_imports(runtime: &Runtime) {
    runtime.set_loader(NoImports, NoImports);
}
