// SPDX-License-Identifier: MPL-2.0
//! Every writable property of an object set to the values a hostile
//! launch line or application would try: its minimum, maximum and default,
//! and for 64-bit numbers `u64::MAX` (`GST_CLOCK_TIME_NONE`) and
//! `i64::MIN`/`i64::MAX`.
//!
//! Values go in through `g_object_set_property`, as `gst-launch-1.0` and a C
//! application set them: GObject refuses one out of the property's range
//! with a warning, and hands every other to the element's `set_property`,
//! where a panic aborts the process. So a test that runs these and returns
//! has shown that no value aborts it.

use gst::glib;
use gst::glib::translate::ToGlibPtr;
use gst::prelude::*;

/// The values tried for `pspec`; none for a type that has no limits to try.
pub fn hostile_values(pspec: &glib::ParamSpec) -> Vec<glib::Value> {
    let mut values = vec![pspec.default_value().clone()];
    macro_rules! limits {
        ($ty:ty, $($extra:expr),*) => {{
            let p = pspec.downcast_ref::<$ty>().unwrap();
            values.push(p.minimum().to_value());
            values.push(p.maximum().to_value());
            $(values.push($extra.to_value());)*
        }};
    }
    let ty = pspec.type_();
    if ty == glib::ParamSpecUInt64::static_type() {
        limits!(glib::ParamSpecUInt64, u64::MAX, u64::MAX - 1, 0u64);
    } else if ty == glib::ParamSpecInt64::static_type() {
        limits!(glib::ParamSpecInt64, i64::MIN, i64::MAX, -1i64);
    } else if ty == glib::ParamSpecUInt::static_type() {
        limits!(glib::ParamSpecUInt, u32::MAX, 0u32);
    } else if ty == glib::ParamSpecInt::static_type() {
        limits!(glib::ParamSpecInt, i32::MIN, i32::MAX, -1i32);
    } else if ty == glib::ParamSpecDouble::static_type() {
        limits!(glib::ParamSpecDouble, f64::NAN, f64::INFINITY, f64::MIN);
    } else if ty == glib::ParamSpecFloat::static_type() {
        limits!(glib::ParamSpecFloat, f32::NAN, f32::INFINITY);
    } else if ty == glib::ParamSpecString::static_type() {
        values.push("".to_value());
        values.push("\u{7f}%s%n\u{feff}".to_value());
        values.push(None::<&str>.to_value());
    } else if ty == glib::ParamSpecEnum::static_type() {
        let p = pspec.downcast_ref::<glib::ParamSpecEnum>().unwrap();
        let class = p.enum_class();
        values.extend(
            class
                .values()
                .iter()
                .filter_map(|v| class.to_value(v.value())),
        );
    }
    values
}

/// Sets `name` to `value` as C does; GObject may refuse it (out of range).
pub fn set_as_c_does(object: &glib::Object, name: &str, value: &glib::Value) {
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: a live object, a NUL-terminated name and a valid GValue.
    unsafe {
        glib::gobject_ffi::g_object_set_property(
            object.as_ptr(),
            name.as_ptr(),
            value.to_glib_none().0,
        );
    }
}

/// Sets every writable property of `object` to each of its hostile values,
/// then reads it back; the number of values set. Returns only if nothing
/// aborted.
pub fn set_every_property(object: &impl IsA<glib::Object>) -> usize {
    let object = object.upcast_ref::<glib::Object>();
    let mut count = 0;
    for pspec in object.list_properties() {
        let flags = pspec.flags();
        if !flags.contains(glib::ParamFlags::WRITABLE)
            || flags.contains(glib::ParamFlags::CONSTRUCT_ONLY)
            // `name` and `parent` are GstObject's own.
            || ["name", "parent"].contains(&pspec.name())
        {
            continue;
        }
        for value in hostile_values(&pspec) {
            set_as_c_does(object, pspec.name(), &value);
            count += 1;
            if flags.contains(glib::ParamFlags::READABLE) {
                let _ = object.property_value(pspec.name());
            }
        }
        // Leave it as it was made.
        set_as_c_does(object, pspec.name(), pspec.default_value());
    }
    count
}

/// The properties of `object` (its own, not those of `GstObject` and its
/// parents: `name`, `parent`) and of its signals that `page` (a Markdown
/// reference page) does not name in backquotes: what `gst-inspect-1.0` lists
/// and the reference has not caught up with.
pub fn undocumented(object: &impl IsA<glib::Object>, page: &std::path::Path) -> Vec<String> {
    let text =
        std::fs::read_to_string(page).unwrap_or_else(|e| panic!("reading {}: {e}", page.display()));
    let object = object.upcast_ref::<glib::Object>();
    let own = |owner: glib::Type| {
        owner != gst::Object::static_type()
            && owner != gst::Element::static_type()
            && owner != gst::Pad::static_type()
            && owner != gst::Bin::static_type()
            && owner != glib::Object::static_type()
            && owner != gst::Pipeline::static_type()
            && !owner.name().starts_with("GstBase")
    };
    let mut missing: Vec<String> = object
        .list_properties()
        .iter()
        .filter(|p| own(p.owner_type()))
        .map(|p| p.name().to_owned())
        .collect();
    missing.extend(own_signals(object.type_()));
    missing.retain(|name| !text.contains(&format!("`{name}")));
    missing
}

/// The signals `ty` itself defines (not its parents').
fn own_signals(ty: glib::Type) -> Vec<String> {
    use glib::translate::IntoGlib;
    let mut n = 0u32;
    // SAFETY: g_signal_list_ids returns an array of n ids that the caller
    // frees; g_signal_name returns a static string for a valid id.
    unsafe {
        let ids = glib::gobject_ffi::g_signal_list_ids(ty.into_glib(), &mut n);
        let names = (0..n as usize)
            .map(|i| {
                let name = glib::gobject_ffi::g_signal_name(*ids.add(i));
                std::ffi::CStr::from_ptr(name)
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        glib::ffi::g_free(ids.cast());
        names
    }
}
