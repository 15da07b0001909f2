/* A C media server's use of the plugins, linked statically: no plugin
 * file on disk, the plugin registered by the function cargo-c's static
 * library exports. Records a short call and reads the outcome from the
 * `finished` signal.
 *
 *   cargo cbuild --release -p gst-plugin-callrec --library-type staticlib
 *   cc record_call.c $(pkg-config --static --cflags --libs gstcallrec-uninstalled) -o record_call
 *   ./record_call /tmp/call.wav
 *
 * (scripts/check-capi.sh does exactly this.) Exit status 0: finalized.
 */
#include <gst/gst.h>

/* From the static library: registers callrec (and stallfiller, which its
 * tracks are built from). */
void gst_plugin_callrec_register (void);

static void
on_finished (GstElement * rec, const GstStructure * outcome, gpointer user_data)
{
  GstStructure **copy = user_data;
  *copy = gst_structure_copy (outcome);
}

int
main (int argc, char **argv)
{
  const char *location = argc > 1 ? argv[1] : "/tmp/call.wav";
  GstStructure *outcome = NULL;
  GError *error = NULL;

  gst_init (&argc, &argv);
  gst_plugin_callrec_register ();

  /* The element must come from this binary, not from a plugin file. */
  GstElementFactory *factory = gst_element_factory_find ("callrecsink");
  if (!factory) {
    g_printerr ("callrecsink was not registered\n");
    return 3;
  }
  GstPlugin *plugin = gst_plugin_feature_get_plugin (GST_PLUGIN_FEATURE (factory));
  if (plugin && gst_plugin_get_filename (plugin)) {
    g_printerr ("callrecsink came from %s, not the static library\n",
        gst_plugin_get_filename (plugin));
    return 3;
  }
  g_clear_object (&plugin);
  gst_object_unref (factory);

  gchar *desc = g_strdup_printf ("callrecsink name=rec location=%s overwrite=true "
      "audiotestsrc num-buffers=50 samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 ! rec. "
      "audiotestsrc num-buffers=50 samplesperbuffer=160 freq=660 ! audio/x-raw,rate=8000,channels=1 ! rec.",
      location);
  GstElement *pipeline = gst_parse_launch (desc, &error);
  g_free (desc);
  if (!pipeline || error) {
    g_printerr ("cannot build the pipeline: %s\n", error ? error->message : "?");
    return 2;
  }
  GstElement *rec = gst_bin_get_by_name (GST_BIN (pipeline), "rec");
  g_signal_connect (rec, "finished", G_CALLBACK (on_finished), &outcome);

  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  GstBus *bus = gst_element_get_bus (pipeline);
  GstMessage *msg = gst_bus_timed_pop_filtered (bus, 10 * GST_SECOND,
      GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  if (msg && GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ERROR) {
    GError *err;
    gst_message_parse_error (msg, &err, NULL);
    g_printerr ("error: %s\n", err->message);
    g_error_free (err);
  }
  if (msg)
    gst_message_unref (msg);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (rec);
  gst_object_unref (pipeline);

  if (!outcome || !gst_structure_has_name (outcome, "callrecsink-finalized")) {
    g_printerr ("the recording was not finalized\n");
    return 1;
  }
  guint64 frames = 0;
  gst_structure_get_uint64 (outcome, "frames", &frames);
  g_print ("finalized %s: %" G_GUINT64_FORMAT " frames\n",
      gst_structure_get_string (outcome, "location"), frames);
  gst_structure_free (outcome);
  return 0;
}
