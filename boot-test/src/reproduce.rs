//! `reproduce-RUN.sh` in `--logs` for every failed run: a shell script
//! that boots exactly that run's machine and kernel command line with
//! plain `dmavm run`, so that a kernel developer can watch it (or bisect
//! it) without the harness. The initramfs of the runs is kept beside the
//! scripts as `initrd.img`; the disk images, random bytes that the run's
//! DMA check wrote over, are made afresh in a temporary folder.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::matrix::RunSpec;
use super::report::RunResult;
use super::runner::IMAGE_BYTES;
use super::vm_args;
use crate::error::{io, Error};

/// The initramfs the scripts boot, in the logs folder.
pub const INITRD: &str = "initrd.img";
/// Where disk images go in the model until the script names its folder.
const WORK_MARK: &str = "/@dmavm-reproduce-work@";

/// A run's script name.
pub fn script_name(run: &str) -> String {
    format!("reproduce-{}.sh", run.replace('/', "_"))
}

/// `'text'` for sh, quotes escaped.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// What every script needs besides its run.
#[derive(Debug, Clone)]
pub struct Context {
    /// The dmavm executable (absolute).
    pub dmavm: PathBuf,
    /// The kernel (absolute).
    pub kernel: PathBuf,
    /// The KVM device.
    pub kvm_device: PathBuf,
}

/// The script of one failed run.
pub fn script(ctx: &Context, spec: &RunSpec, result: &RunResult) -> String {
    let machine = vm_args::with_images(&spec.machine, Path::new(WORK_MARK));
    let links = super::expect::Expectations::of(&machine).nets;
    let machine = vm_args::with_taps(&machine, &links);
    let images: Vec<String> = machine
        .devices
        .iter()
        .filter_map(|d| match &d.kind {
            dmavm_machine::DeviceKind::Disk { .. } => Some(d.id.clone()),
            _ => None,
        })
        .collect();
    let why = result
        .first_failure
        .as_ref()
        .map_or(String::new(), |c| format!("{}: {}", c.name, c.detail).replace('\n', " "));
    let mut s = String::from("#!/bin/sh\n");
    s.push_str(&format!("# dmavm boot-test: reproduces run {} of {}\n", result.name, result.matrix));
    s.push_str(&format!("# which ended {}: {why}\n", result.outcome.as_str()));
    if spec.machine.arch == dmavm_machine::Arch::Aarch64 {
        s.push_str("# An arm64 guest: run this on an arm64 host with KVM, DMAVM naming an aarch64 dmavm.\n");
    }
    s.push_str(
        "# Boots the same machine and kernel command line with `dmavm run` on hardware KVM;\n\
         # the serial console is this terminal. DMAVM=/path/to/dmavm picks another dmavm.\n\
         set -eu\n\
         here=$(cd \"$(dirname \"$0\")\" && pwd)\n\
         work=$(mktemp -d)\n\
         trap 'rm -rf \"$work\"' EXIT\n",
    );
    if !links.is_empty() {
        s.push_str(
            "# The net check's links: the harness made these TAPs in a network namespace of the\n\
             # run's own and served a block on each (port 8080, GET /data; port 9000 takes it back).\n\
             # Make them (as root, in a namespace: unshare -n) before running this:\n",
        );
        for l in &links {
            s.push_str(&format!(
                "#   ip tuntap add {tap} mode tap && ip addr add {host}/24 dev {tap} && ip link set {tap} up\n",
                tap = l.tap,
                host = l.host
            ));
        }
    }
    for id in &images {
        s.push_str(&format!(
            "head -c {IMAGE_BYTES} /dev/urandom > \"$work\"/{}\n",
            quote(&format!("{id}.img"))
        ));
    }
    s.push_str(&format!("dmavm=${{DMAVM:-{}}}\n", quote(&ctx.dmavm.display().to_string())));
    let mut line = format!(
        "\"$dmavm\" run --kernel {} --initrd \"$here\"/{INITRD}",
        quote(&ctx.kernel.display().to_string())
    );
    let rest = [
        "--cmdline".to_string(),
        result.cmdline.clone(),
        "--kvm-device".into(),
        ctx.kvm_device.display().to_string(),
        "--stats".into(),
    ]
    .into_iter()
    .chain(vm_args::machine_args(&machine, spec.cpus, spec.memory))
    .chain(vm_args::test_args(spec));
    for w in rest {
        line.push_str(" \\\n  ");
        // The images' folder is the script's own temporary one.
        line.push_str(&quote(&w).replace(WORK_MARK, "'\"$work\"'"));
    }
    s.push_str(&line);
    s.push('\n');
    s
}

/// Writes a script for every failed run of `runs` into `logs`, and the
/// initramfs they boot, copied from `initrd`. The paths written.
pub fn write_all(
    ctx: &Context,
    logs: &Path,
    initrd: &Path,
    specs: &[RunSpec],
    runs: &[RunResult],
) -> Result<Vec<PathBuf>, Error> {
    let failed: Vec<&RunResult> = runs.iter().filter(|r| !r.passed()).collect();
    let mut written = Vec::new();
    if failed.is_empty() {
        return Ok(written);
    }
    let kept = logs.join(INITRD);
    std::fs::copy(initrd, &kept).map_err(io(format!("copying the initramfs to {}", kept.display())))?;
    for r in failed {
        let Some(spec) = specs.iter().find(|s| s.name == r.name) else { continue };
        let path = logs.join(script_name(&r.name));
        std::fs::write(&path, script(ctx, spec, r)).map_err(io(format!("writing {}", path.display())))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(io(format!("making {} executable", path.display())))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::run;
    use crate::verdict::Outcome;

    /// The script run with a stand-in dmavm that prints its arguments: it
    /// must start `dmavm run` with the run's kernel command line and the
    /// machine's options exactly, its disks' images made and named.
    #[test]
    fn the_script_runs_exactly_the_machine() {
        let text = "[machine.m]\ncmdline = \"x=1\"\n[machine.m.iommu]\n[[machine.m.disk]]\ntransport = \"pci\"\n[[machine.m.rng]]\n";
        let specs = crate::matrix::parse(text, "t.toml").unwrap();
        let dir = std::env::temp_dir().join(format!("dmavm-reproduce-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("fake-dmavm");
        std::fs::write(&fake, "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\nls \"${5%/*}\" >/dev/null\nfor d in \"$@\"; do case $d in path=*) p=${d#path=}; p=${p%%,*}; wc -c < \"$p\";; esac; done\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let initrd = dir.join("source-initrd");
        std::fs::write(&initrd, b"initrd").unwrap();
        let mut r = run("m", "t.toml", Outcome::Failed, Some(("dma", "it's \"bad\"")));
        r.cmdline = "console=ttyS0 x=1 q='a b'".into();
        let ctx = Context {
            dmavm: "/nowhere/dmavm".into(),
            kernel: "/k/bz Image".into(),
            kvm_device: "/dev/kvm".into(),
        };
        let passed = run("other", "t.toml", Outcome::Passed, None);
        let written = write_all(&ctx, &dir, &initrd, &specs, &[r.clone(), passed]).unwrap();
        assert_eq!(written, [dir.join("reproduce-m.sh")]);
        assert_eq!(std::fs::read(dir.join(INITRD)).unwrap(), b"initrd");
        let out = std::process::Command::new(&written[0]).env("DMAVM", &fake).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let words: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        assert_eq!(words[..4], ["run", "--kernel", "/k/bz Image", "--initrd"]);
        assert_eq!(words[4], dir.canonicalize().unwrap().join(INITRD).display().to_string());
        assert_eq!(
            words[5..10],
            ["--cmdline", "console=ttyS0 x=1 q='a b'", "--kvm-device", "/dev/kvm", "--stats"]
        );
        let spec = &specs[0];
        let want = vm_args::machine_args(&spec.machine, spec.cpus, spec.memory);
        let got = &words[10..10 + want.len()];
        // The same options, the disk image in the script's own folder.
        for (g, w) in got.iter().zip(&want) {
            if w.starts_with("path=") {
                let (_, rest) = w.split_once(',').unwrap();
                assert!(g.ends_with(&format!("/disk0.img,{rest}")) && !g.contains(WORK_MARK), "{g}");
            } else {
                assert_eq!(g, w);
            }
        }
        // The stand-in saw the image, 2 MiB, before the script removed it.
        assert_eq!(words[10 + want.len()].trim(), IMAGE_BYTES.to_string());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_net_run_names_the_taps_to_make() {
        let specs = crate::matrix::parse("[machine.n]\n[[machine.n.net]]\nid = \"up\"\n", "t.toml").unwrap();
        let r = run("n", "t.toml", Outcome::Failed, Some(("net", "ping to the peer 169.254.10.1 failed")));
        let ctx = Context { dmavm: "/d".into(), kernel: "/k".into(), kvm_device: "/dev/kvm".into() };
        let text = script(&ctx, &specs[0], &r);
        assert!(
            text.contains(
                "#   ip tuntap add btnet0 mode tap && ip addr add 169.254.10.1/24 dev btnet0 && ip link set btnet0 up\n"
            ),
            "{text}"
        );
        assert!(text.contains("'tap=btnet0,id=up,"), "{text}");
    }
}
